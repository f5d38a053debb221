//! Prosody 0.12: configuration, static-route plugin, launch command.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ca::CertFiles;

/// Outgoing s2s of one Prosody: its listener and where to find its peers.
#[derive(Debug, Clone)]
pub(crate) struct S2s {
    /// The s2s listener's port (on the server's address).
    pub port: u16,
    /// domain -> (address, port) of each peer, instead of DNS.
    pub routes: Vec<(String, IpAddr, u16)>,
}

/// Everything the configuration file needs.
pub(crate) struct Config<'a> {
    pub dir: &'a Path,
    pub ip: IpAddr,
    pub c2s_port: u16,
    pub domains: &'a [String],
    pub certs: &'a CertFiles,
    pub require_tls: bool,
    pub s2s: Option<&'a S2s>,
    pub debug_log: bool,
}

/// The config file's path inside the server's directory.
pub(crate) fn config_path(dir: &Path) -> PathBuf {
    dir.join("prosody.cfg.lua")
}

/// The main log.
pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join("prosody.log")
}

/// `prosody --config DIR/prosody.cfg.lua -F` (foreground: the child is the
/// server; `posix` writes its pid file).
pub(crate) fn command(program: &Path, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--config")
        .arg(config_path(dir))
        .arg("-F")
        .current_dir(dir);
    command
}

/// The log line that says `service` listens on `addr`.
pub(crate) fn activated_line(service: &str, addr: std::net::SocketAddr) -> String {
    format!(
        "Activated service '{service}' on [{}]:{}",
        addr.ip(),
        addr.port()
    )
}

/// A Lua string literal.
fn lua(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path(p: &Path) -> String {
    lua(&p.to_string_lossy())
}

/// Renders DIR/prosody.cfg.lua.
pub(crate) fn render(config: &Config<'_>) -> String {
    let dir = config.dir;
    let level = if config.debug_log { "debug" } else { "info" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Written by atm-xmpp-server: a private test server, not the system's."
    );
    let _ = writeln!(out, "run_as_root = true");
    let _ = writeln!(out, "pidfile = {}", path(&dir.join("prosody.pid")));
    let _ = writeln!(out, "data_path = {}", path(&dir.join("data")));
    let _ = writeln!(
        out,
        "log = {{ {{ levels = {{ min = {} }}, to = \"file\", filename = {} }}, \
         {{ levels = {{ min = \"error\" }}, to = \"console\" }} }}",
        lua(level),
        path(&log_path(dir))
    );
    let _ = writeln!(out, "admin_socket = {}", path(&dir.join("prosody.sock")));
    let _ = writeln!(out, "certificates = {}", path(&dir.join("certs")));
    let _ = writeln!(out, "plugin_paths = {{ {} }}", path(&dir.join("plugins")));
    let _ = writeln!(out, "interfaces = {{ {} }}", lua(&config.ip.to_string()));
    let _ = writeln!(out, "c2s_ports = {{ {} }}", config.c2s_port);
    let _ = writeln!(
        out,
        "c2s_direct_tls_ports = {{}}; http_ports = {{}}; https_ports = {{}}"
    );
    let _ = writeln!(out, "authentication = \"internal_hashed\"");
    let _ = writeln!(out, "storage = \"internal\"");
    let _ = writeln!(out, "c2s_require_encryption = {}", config.require_tls);
    let _ = writeln!(
        out,
        "allow_unencrypted_plain_auth = {}",
        !config.require_tls
    );
    let _ = writeln!(out, "allow_registration = true");
    let _ = writeln!(out, "min_seconds_between_registrations = 0");
    let _ = writeln!(
        out,
        "registration_whitelist = {{ \"127.0.0.1\", \"::1\", {} }}",
        lua(&config.ip.to_string())
    );
    let _ = writeln!(out, "default_archive_policy = true");
    let _ = writeln!(out, "pep_max_items = 1000");
    let mut modules = vec![
        "roster",
        "saslauth",
        "tls",
        "disco",
        "register",
        "carbons",
        "pep",
        "mam",
        "offline",
        "smacks",
        "ping",
        "private",
        "vcard_legacy",
        "blocklist",
        "posix",
    ];
    match config.s2s {
        None => {
            let _ = writeln!(out, "s2s_ports = {{}}");
            let _ = writeln!(out, "modules_disabled = {{ \"s2s\" }}");
        }
        Some(s2s) => {
            modules.extend(["dialback", "s2s_static_routes"]);
            let _ = writeln!(out, "s2s_ports = {{ {} }}", s2s.port);
            let _ = writeln!(out, "s2s_require_encryption = true");
            // Certificate authentication (SASL EXTERNAL), verified against
            // the test CA only (cafile replaces the system bundle).
            let _ = writeln!(out, "s2s_secure_auth = true");
            let _ = writeln!(out, "s2s_static_routes = {{");
            for (domain, ip, port) in &s2s.routes {
                let _ = writeln!(
                    out,
                    "  [{}] = {{ {}, {} }};",
                    lua(domain),
                    lua(&ip.to_string()),
                    port
                );
            }
            let _ = writeln!(out, "}}");
        }
    }
    let quoted: Vec<String> = modules.iter().map(|m| lua(m)).collect();
    let _ = writeln!(out, "modules_enabled = {{ {} }}", quoted.join("; "));
    let _ = writeln!(
        out,
        "ssl = {{ key = {}; certificate = {}; cafile = {} }}",
        path(&config.certs.key),
        path(&config.certs.cert),
        path(&config.certs.ca)
    );
    for domain in config.domains {
        let _ = writeln!(out, "VirtualHost {}", lua(domain));
    }
    out
}

/// Test-only Prosody 0.12 plugin: outgoing s2s to the domains listed in
/// `s2s_static_routes` goes to a fixed address and port instead of DNS.
/// It wraps `net.resolvers.service.new`, which mod_s2s calls for each new
/// outgoing connection (a 0.12 internal: recheck on upgrade).
pub(crate) const STATIC_ROUTES_PLUGIN: &str = r#"-- Written by atm-xmpp-server, for tests only.
-- Outgoing s2s to the domains in s2s_static_routes goes to a fixed address
-- and port instead of DNS (Prosody 0.12 internals: recheck on upgrade).
module:set_global();
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";
local routes = module:get_option("s2s_static_routes", {});
local orig_new = service.new;
service.new = function (hostname, srv, proto, extra)
	local route = routes[hostname];
	if not route then return orig_new(hostname, srv, proto, extra); end
	if srv == "xmpp-server" then return basic.new(route[1], route[2], proto, extra); end
	return manual.new({}, proto, extra); -- no direct-TLS (xmpps-server) target
end
function module.unload() service.new = orig_new; end
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_are_escaped() {
        assert_eq!(lua(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
