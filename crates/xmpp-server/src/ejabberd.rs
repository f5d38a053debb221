//! ejabberd 23.01: configuration, a private `ejabberdctl` that runs as
//! root, launch command.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ca::CertFiles;
use crate::error::{io_error, Error};

/// Everything the configuration files need.
pub(crate) struct Config<'a> {
    pub dir: &'a Path,
    pub ip: IpAddr,
    pub c2s_port: u16,
    pub dist_port: u16,
    pub domains: &'a [String],
    pub certs: &'a CertFiles,
    pub require_tls: bool,
    pub debug_log: bool,
}

/// The main log.
pub(crate) fn log_path(dir: &Path) -> PathBuf {
    dir.join("logs").join("ejabberd.log")
}

/// The log line that says the node is up.
pub(crate) const STARTED_LINE: &str = " is started in the node ";

/// The log line that says the c2s listener accepts on `addr`.
pub(crate) fn accepting_line(addr: std::net::SocketAddr) -> String {
    format!("Start accepting TCP connections at {addr} for ejabberd_c2s")
}

/// `DIR/ejabberdctl --config-dir DIR --logs DIR/logs --spool DIR/db
/// foreground`. The private script `exec`s into `erl`, which `exec`s into
/// `beam.smp`: the child is the server. HOME points into DIR so that nothing
/// is written to the real home directory.
pub(crate) fn command(dir: &Path) -> Command {
    let mut command = Command::new(dir.join("ejabberdctl"));
    command
        .arg("--config-dir")
        .arg(dir)
        .arg("--logs")
        .arg(dir.join("logs"))
        .arg("--spool")
        .arg(dir.join("db"))
        .arg("foreground")
        .env("HOME", dir)
        .env("CONTRIB_MODULES_PATH", dir.join("contrib"))
        .current_dir(dir);
    command
}

/// Writes DIR/ejabberdctl (a copy of the system script that runs as the
/// current user and `exec`s the VM), DIR/ejabberdctl.cfg, DIR/inetrc and
/// DIR/ejabberd.yml.
pub(crate) fn write_files(system_ctl: &Path, config: &Config<'_>) -> Result<(), Error> {
    let dir = config.dir;
    let script = std::fs::read_to_string(system_ctl).map_err(io_error("reading", system_ctl))?;
    let private = private_ctl(&script).ok_or_else(|| Error::Io {
        action: "adapting (unexpected layout: no INSTALLUSER=ejabberd / as_current_user line)",
        path: system_ctl.to_path_buf(),
        source: std::io::Error::other("ejabberdctl layout changed"),
    })?;
    let ctl = dir.join("ejabberdctl");
    std::fs::write(&ctl, private).map_err(io_error("writing", &ctl))?;
    set_executable(&ctl)?;
    for sub in ["logs", "db", "contrib"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(io_error("creating", &path))?;
    }
    crate::ca::write(&dir.join("ejabberdctl.cfg"), &render_ctl_cfg(config))?;
    crate::ca::write(&dir.join("inetrc"), INETRC)?;
    crate::ca::write(&dir.join("ejabberd.yml"), &render_yml(config))?;
    Ok(())
}

fn set_executable(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mut permissions = std::fs::metadata(path)
        .map_err(io_error("reading", path))?
        .permissions();
    permissions.set_mode(0o755);
    std::fs::set_permissions(path, permissions).map_err(io_error("chmod", path))
}

/// The system script with `INSTALLUSER` emptied (run as the current user,
/// no `su ejabberd`) and `exec` before the command it runs, so that the
/// process we spawn becomes the VM. `None` if the script's layout changed.
fn private_ctl(script: &str) -> Option<String> {
    const USER: &str = "\nINSTALLUSER=ejabberd\n";
    const RUN: &str = "as_current_user) \"$@\" ;;";
    if !script.contains(USER) || !script.contains(RUN) {
        return None;
    }
    Some(script.replacen(USER, "\nINSTALLUSER=\n", 1).replacen(
        RUN,
        "as_current_user) exec \"$@\" ;;",
        1,
    ))
}

/// Resolver configuration for the VM: files, then the system resolver
/// (ERL_INETRC points here, not at /etc/ejabberd/inetrc).
const INETRC: &str = "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1}, [\"localhost\"]}.\n{file, resolv, \"/etc/resolv.conf\"}.\n";

fn render_ctl_cfg(config: &Config<'_>) -> String {
    let ip = match config.ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{{{a},{b},{c},{d}}}")
        }
        IpAddr::V6(_) => "{127,0,0,1}".to_owned(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by atm-xmpp-server: a private test node, not the system's."
    );
    // No dot in the host part: -sname. Unique per instance (named after its
    // distribution port), though epmd-less nodes would not clash anyway.
    let _ = writeln!(out, "ERLANG_NODE=atm{}@localhost", config.dist_port);
    // Cookie on the command line: no ~/.erlang.cookie. The distribution
    // listener only on loopback (set directly: INET_DIST_INTERFACE would cost
    // an extra VM start to parse the address).
    let _ = writeln!(
        out,
        "ERL_OPTIONS=\"-setcookie atmtest{} -kernel inet_dist_use_interface {ip}\"",
        config.dist_port
    );
    // epmd-less: the node listens on this port, ejabberdctl connects to it.
    let _ = writeln!(out, "ERL_DIST_PORT={}", config.dist_port);
    let _ = writeln!(
        out,
        "EJABBERD_PID_PATH={}",
        config.dir.join("ejabberd.pid").display()
    );
    let _ = writeln!(out, "EJABBERD_BYPASS_WARNINGS=true");
    out
}

fn yaml(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn render_yml(config: &Config<'_>) -> String {
    let hosts: Vec<String> = config.domains.iter().map(|d| yaml(d)).collect();
    let level = if config.debug_log { "debug" } else { "info" };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Written by atm-xmpp-server: a private test server, not the system's."
    );
    let _ = writeln!(out, "hosts: [{}]", hosts.join(", "));
    let _ = writeln!(out, "loglevel: {level}");
    let _ = writeln!(
        out,
        "certfiles: [{}]",
        yaml(&config.certs.combined.to_string_lossy())
    );
    let _ = writeln!(out, "ca_file: {}", yaml(&config.certs.ca.to_string_lossy()));
    let _ = writeln!(out, "listen:");
    let _ = writeln!(
        out,
        "  - {{port: {}, ip: {}, module: ejabberd_c2s, max_stanza_size: 262144, access: c2s, \
         starttls: true, starttls_required: {}}}",
        config.c2s_port,
        yaml(&config.ip.to_string()),
        config.require_tls
    );
    out.push_str(YML_REST);
    out
}

/// The part of ejabberd.yml that does not depend on the instance.
const YML_REST: &str = r#"auth_method: internal
# plain: SCRAM-SHA-1/-256/-512 (and -PLUS) are all offered.
auth_password_format: plain
disable_sasl_mechanisms: [digest-md5, x-oauth2]
# The default (600 s between registrations from one address) would refuse
# the second test account.
registration_timeout: infinity
acl:
  local: {user_regexp: ""}
  loopback: {ip: [127.0.0.0/8, "::1/128"]}
access_rules:
  local: {allow: local}
  c2s: {allow: all}
  register: {allow: all}
  pubsub_createnode: {allow: local}
  trusted_network: {allow: loopback}
api_permissions:
  "console commands": {from: [ejabberd_ctl], who: all, what: "*"}
modules:
  mod_caps: {}
  mod_carboncopy: {}
  mod_disco: {}
  mod_mam: {default: always}
  mod_offline: {}
  mod_ping: {}
  mod_pubsub:
    access_createnode: pubsub_createnode
    plugins: [flat, pep]
    # ejabberd 23.01 refuses pubsub#max_items in publish-options and PEP
    # nodes keep 1 item by default: OMEMO 2 nodes get their limit here.
    force_node_config:
      "urn:xmpp:omemo:2:*": {access_model: open, max_items: 1000}
  mod_register: {access: register, ip_access: trusted_network}
  mod_roster: {}
  mod_stream_mgmt: {}
  mod_vcard: {}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ctl_runs_as_current_user_and_execs() {
        let script = "#!/bin/bash\nINSTALLUSER=ejabberd\nexec_cmd()\n{\n    case $EXEC_CMD in\n        as_current_user) \"$@\" ;;\n    esac\n}\n";
        let private = private_ctl(script).unwrap();
        assert!(private.contains("\nINSTALLUSER=\n"));
        assert!(private.contains("as_current_user) exec \"$@\" ;;"));
        assert!(private_ctl("#!/bin/bash\n").is_none());
    }
}
