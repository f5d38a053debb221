-- Written by atm-endpoint's live_bench example into a private test server's
-- plugin directory: logs every stanza Prosody hands to a client (c2s), and
-- every message a client hands to Prosody, one "ATMCOUNT" line each at
-- level info. Never for a production server.
--
-- Fields: t=the time (Unix seconds), dir=out|in, stanza=message|iq|presence, kind=direct|delayed|
-- carbon-sent|carbon-received|mam|pep, omemo=payload|empty|none (the OMEMO 2
-- element of the message itself or of the message a carbon or an archive
-- result forwards), bytes=length of the stanza as Prosody serializes it
-- (tostring; UTF-8; without TLS, stream framing or XEP-0198 <r/>/<a/>),
-- to= the receiving session's full JID (out) or the addressee (in),
-- from= the (inner) message's sender, id= the (inner) message's id.
module:set_global();

local filters = require "util.filters";
local now = require "util.time".now;

local NS_CARBONS = "urn:xmpp:carbons:2";
local NS_FORWARD = "urn:xmpp:forward:0";
local NS_MAM = "urn:xmpp:mam:2";
local NS_OMEMO = "urn:xmpp:omemo:2";
local NS_EVENT = "http://jabber.org/protocol/pubsub#event";

local function forwarded(wrapper)
	local fwd = wrapper:get_child("forwarded", NS_FORWARD);
	if not fwd then return nil end
	return fwd:get_child("message", "jabber:client") or fwd:get_child("message");
end

local function describe(stanza)
	local kind, inner = "direct", stanza;
	if stanza.name == "message" then
		local carbon = stanza:get_child("sent", NS_CARBONS) or stanza:get_child("received", NS_CARBONS);
		local result = stanza:get_child("result", NS_MAM);
		if carbon then
			kind = "carbon-" .. carbon.name;
			inner = forwarded(carbon) or stanza;
		elseif result then
			kind = "mam";
			inner = forwarded(result) or stanza;
		elseif stanza:get_child("event", NS_EVENT) then
			kind = "pep";
		elseif stanza:get_child("delay", "urn:xmpp:delay") then
			kind = "delayed";
		end
	end
	local omemo = "none";
	local encrypted = inner:get_child("encrypted", NS_OMEMO);
	if encrypted then
		omemo = encrypted:get_child("payload") and "payload" or "empty";
	end
	return kind, omemo, inner.attr.from or "-", inner.attr.id or "-";
end

local function log_out(stanza, session)
	if session.type == "c2s" and stanza and stanza.name then
		local kind, omemo, from, id = describe(stanza);
		module:log("info", "ATMCOUNT t=%.6f dir=out stanza=%s kind=%s omemo=%s bytes=%d to=%s from=%s id=%s", now(),
			stanza.name, kind, omemo, #tostring(stanza), session.full_jid or "-", from, id);
	end
	return stanza;
end

local function log_in(stanza, session)
	if session.type == "c2s" and stanza and stanza.name == "message" then
		local kind, omemo, _, id = describe(stanza);
		module:log("info", "ATMCOUNT t=%.6f dir=in stanza=%s kind=%s omemo=%s bytes=%d to=%s from=%s id=%s", now(),
			stanza.name, kind, omemo, #tostring(stanza), stanza.attr.to or "-",
			session.full_jid or "-", id);
	end
	return stanza;
end

local function init(session)
	filters.add_filter(session, "stanzas/out", log_out, -10000);
	filters.add_filter(session, "stanzas/in", log_in, 10000);
end

filters.add_filter_hook(init);

function module.unload()
	filters.remove_filter_hook(init);
end
