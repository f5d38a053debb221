// qxmpp-peer: one QXmpp device (OMEMO 2 + ATM, in-memory storage) per process,
// driven by JSON lines on stdin; replies and events are JSON lines on stdout.
//
// Built only on QXmpp's public API, for interop tests during development.
// See docs/interop.md for the protocol. Not part of the Cargo workspace or CI.

#include <QCoreApplication>
#include <QDomDocument>
#include <QMap>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSocketNotifier>
#include <QSslCertificate>
#include <QTimer>

#include <QXmppAtmManager.h>
#include <QXmppAtmTrustMemoryStorage.h>
#include <QXmppCarbonManagerV2.h>
#include <QXmppClient.h>
#include <QXmppConfiguration.h>
#include <QXmppE2eeMetadata.h>
#include <QXmppError.h>
#include <QXmppLogger.h>
#include <QXmppMessage.h>
#include <QXmppPresence.h>
#include <QXmppPubSubManager.h>
#include <QXmppRosterManager.h>
#include <QXmppTrustMessageElement.h>
#include <QXmppTrustMessageKeyOwner.h>
#include <QXmppOmemoManager.h>
#include <QXmppOmemoMemoryStorage.h>

#include <cstdio>
#include <unistd.h>

static const QString NS_OMEMO2 = QStringLiteral("urn:xmpp:omemo:2");

static QString levelName(QXmpp::TrustLevel level)
{
    switch (level) {
    case QXmpp::TrustLevel::Undecided:
        return QStringLiteral("undecided");
    case QXmpp::TrustLevel::AutomaticallyDistrusted:
        return QStringLiteral("automatically_distrusted");
    case QXmpp::TrustLevel::ManuallyDistrusted:
        return QStringLiteral("manually_distrusted");
    case QXmpp::TrustLevel::AutomaticallyTrusted:
        return QStringLiteral("automatically_trusted");
    case QXmpp::TrustLevel::ManuallyTrusted:
        return QStringLiteral("manually_trusted");
    case QXmpp::TrustLevel::Authenticated:
        return QStringLiteral("authenticated");
    }
    return QStringLiteral("unknown");
}

static QJsonObject keyJson(const QString &jid, const QByteArray &key, QXmpp::TrustLevel level)
{
    return QJsonObject {
        { QStringLiteral("jid"), jid },
        { QStringLiteral("key_hex"), QString::fromLatin1(key.toHex()) },
        { QStringLiteral("key_b64"), QString::fromLatin1(key.toBase64()) },
        { QStringLiteral("level"), levelName(level) },
    };
}

static QJsonArray keyListJson(const QList<QByteArray> &keys)
{
    QJsonArray out;
    for (const auto &k : keys) {
        out.append(QString::fromLatin1(k.toHex()));
    }
    return out;
}

static QList<QByteArray> keysFrom(const QJsonObject &cmd)
{
    QList<QByteArray> keys;
    if (cmd.contains(QStringLiteral("key_hex"))) {
        keys.append(QByteArray::fromHex(cmd.value(QStringLiteral("key_hex")).toString().toLatin1()));
    }
    for (const auto &v : cmd.value(QStringLiteral("keys_hex")).toArray()) {
        keys.append(QByteArray::fromHex(v.toString().toLatin1()));
    }
    return keys;
}

static QList<QString> jidsFrom(const QJsonObject &cmd)
{
    QList<QString> jids;
    if (cmd.contains(QStringLiteral("jid"))) {
        jids.append(cmd.value(QStringLiteral("jid")).toString());
    }
    for (const auto &v : cmd.value(QStringLiteral("jids")).toArray()) {
        jids.append(v.toString());
    }
    return jids;
}

class Peer : public QObject
{
public:
    Peer()
    {
        m_stdin = new QSocketNotifier(STDIN_FILENO, QSocketNotifier::Read, this);
        connect(m_stdin, &QSocketNotifier::activated, this, &Peer::readStdin);
    }

private:
    // ---- output -------------------------------------------------------------

    static void emitLine(const QJsonObject &obj)
    {
        const auto line = QJsonDocument(obj).toJson(QJsonDocument::Compact);
        fwrite(line.constData(), 1, size_t(line.size()), stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }

    static void event(const QString &name, QJsonObject fields = {})
    {
        fields.insert(QStringLiteral("event"), name);
        emitLine(fields);
    }

    static void reply(const QJsonValue &id, bool ok, QJsonObject fields = {})
    {
        if (!id.isUndefined()) {
            fields.insert(QStringLiteral("id"), id);
        }
        fields.insert(QStringLiteral("ok"), ok);
        emitLine(fields);
    }

    static void fail(const QJsonValue &id, const QString &error)
    {
        reply(id, false, { { QStringLiteral("error"), error } });
    }

    // ---- input --------------------------------------------------------------

    void readStdin()
    {
        char buf[4096];
        const auto n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0) {
            m_stdin->setEnabled(false);
            quit();
            return;
        }
        m_buffer.append(buf, int(n));
        int nl;
        while ((nl = m_buffer.indexOf('\n')) >= 0) {
            const auto line = m_buffer.left(nl).trimmed();
            m_buffer.remove(0, nl + 1);
            if (!line.isEmpty()) {
                handleLine(line);
            }
        }
    }

    void handleLine(const QByteArray &line)
    {
        QJsonParseError err;
        const auto doc = QJsonDocument::fromJson(line, &err);
        if (!doc.isObject()) {
            fail(QJsonValue::Undefined, QStringLiteral("bad JSON: ") + err.errorString());
            return;
        }
        const auto cmd = doc.object();
        const auto id = cmd.value(QStringLiteral("id"));
        const auto name = cmd.value(QStringLiteral("cmd")).toString();

        if (name == QLatin1String("quit")) {
            reply(id, true);
            quit();
            return;
        }
        if (name == QLatin1String("connect")) {
            doConnect(id, cmd);
            return;
        }
        if (!m_client) {
            fail(id, QStringLiteral("not connected"));
            return;
        }
        if (name == QLatin1String("own_key")) {
            doOwnKey(id);
        } else if (name == QLatin1String("keys")) {
            doKeys(id, cmd);
        } else if (name == QLatin1String("devices")) {
            doDevices(id, cmd);
        } else if (name == QLatin1String("authenticate")) {
            doDecide(id, cmd, true);
        } else if (name == QLatin1String("distrust")) {
            doDecide(id, cmd, false);
        } else if (name == QLatin1String("decide")) {
            doDecideBoth(id, cmd);
        } else if (name == QLatin1String("send_chat")) {
            doSendChat(id, cmd);
        } else if (name == QLatin1String("subscribe_presence")) {
            const auto jid = cmd.value(QStringLiteral("jid")).toString();
            m_client->findExtension<QXmppRosterManager>()->subscribeTo(jid).then(this, [id](QXmpp::SendResult &&r) {
                if (auto *e = std::get_if<QXmppError>(&r)) {
                    fail(id, e->description);
                } else {
                    reply(id, true);
                }
            });
        } else if (name == QLatin1String("subscribe_devices") || name == QLatin1String("request_devices")) {
            const auto jids = jidsFrom(cmd);
            auto task = name == QLatin1String("subscribe_devices") ? m_omemo->subscribeToDeviceLists(jids) : m_omemo->requestDeviceLists(jids);
            task.then(this, [id](QVector<QXmppOmemoManager::DevicesResult> &&results) {
                QJsonArray out;
                bool allOk = true;
                for (const auto &r : results) {
                    QJsonObject o { { QStringLiteral("jid"), r.jid } };
                    if (auto *e = std::get_if<QXmppError>(&r.result)) {
                        o.insert(QStringLiteral("error"), e->description);
                        allOk = false;
                    }
                    out.append(o);
                }
                reply(id, allOk, { { QStringLiteral("results"), out } });
            });
        } else if (name == QLatin1String("build_sessions")) {
            m_omemo->buildMissingSessions(jidsFrom(cmd)).then(this, [id]() { reply(id, true); });
        } else if (name == QLatin1String("disconnect")) {
            m_client->disconnectFromServer();
            reply(id, true);
        } else {
            fail(id, QStringLiteral("unknown command: ") + name);
        }
    }

    // ---- commands -----------------------------------------------------------

    void doConnect(const QJsonValue &id, const QJsonObject &cmd)
    {
        if (m_client) {
            fail(id, QStringLiteral("already connected"));
            return;
        }
        QXmppConfiguration config;
        config.setJid(cmd.value(QStringLiteral("jid")).toString());
        config.setPassword(cmd.value(QStringLiteral("password")).toString());
        if (cmd.contains(QStringLiteral("host"))) {
            config.setHost(cmd.value(QStringLiteral("host")).toString());
        }
        if (cmd.contains(QStringLiteral("port"))) {
            config.setPort(cmd.value(QStringLiteral("port")).toInt());
        }
        if (cmd.contains(QStringLiteral("resource"))) {
            config.setResource(cmd.value(QStringLiteral("resource")).toString());
        }
        const auto caFile = cmd.value(QStringLiteral("ca_file")).toString();
        if (!caFile.isEmpty()) {
            const auto certs = QSslCertificate::fromPath(caFile, QSsl::Pem);
            if (certs.isEmpty()) {
                fail(id, QStringLiteral("no certificate in ca_file ") + caFile);
                return;
            }
            config.setCaCertificates(certs);
        }
        config.setStreamSecurityMode(QXmppConfiguration::TLSRequired);
        m_logStanzas = cmd.value(QStringLiteral("log_stanzas")).toBool(false);

        m_client = new QXmppClient(this);
        auto *logger = new QXmppLogger(this);
        logger->setLoggingType(QXmppLogger::SignalLogging);
        logger->setMessageTypes(QXmppLogger::AnyMessage);
        m_client->setLogger(logger);
        connect(logger, &QXmppLogger::message, this, &Peer::onLog);

        // The order follows QXmppOmemoManager's documentation: PubSub, the
        // trust manager (ATM), OMEMO as the encryption extension, carbons.
        m_client->addNewExtension<QXmppPubSubManager>();
        m_trustStorage = new QXmppAtmTrustMemoryStorage;
        m_atm = m_client->addNewExtension<QXmppAtmManager>(m_trustStorage);
        m_omemoStorage = new QXmppOmemoMemoryStorage;
        m_omemo = m_client->addNewExtension<QXmppOmemoManager>(m_omemoStorage);
        m_client->setEncryptionExtension(m_omemo);
        m_client->addNewExtension<QXmppCarbonManagerV2>();

        const auto policy = cmd.value(QStringLiteral("policy")).toString(QStringLiteral("toakafa"));
        m_omemo->setSecurityPolicy(policy == QLatin1String("none") ? QXmpp::NoSecurityPolicy : QXmpp::Toakafa);
        // true (default, as Kaidan), false, or "after_setup": switched on
        // only once setUp() has finished, so that the own account's other
        // devices are not sent key exchanges while setUp() runs (an answer
        // arriving then seems to be lost: docs/interop.md, report 2).
        const auto building = cmd.value(QStringLiteral("auto_session_building"));
        m_buildAfterSetUp = building.toString() == QLatin1String("after_setup");
        m_omemo->setNewDeviceAutoSessionBuildingEnabled(!m_buildAfterSetUp && building.toBool(true));

        auto *roster = m_client->findExtension<QXmppRosterManager>();
        const bool autoAccept = cmd.value(QStringLiteral("auto_accept_subscriptions")).toBool(true);
        connect(roster, &QXmppRosterManager::subscriptionRequestReceived, this, [=, this](const QString &from, const QXmppPresence &) {
            event(QStringLiteral("subscription_request"), { { QStringLiteral("jid"), from } });
            if (autoAccept) {
                roster->acceptSubscription(from);
                roster->subscribeTo(from);
            }
        });

        connect(m_client, &QXmppClient::connected, this, &Peer::onConnected);
        connect(m_client, &QXmppClient::disconnected, this, []() { event(QStringLiteral("disconnected")); });
        connect(m_client, &QXmppClient::errorOccurred, this, [this](const QXmppError &e) {
            event(QStringLiteral("error"), { { QStringLiteral("text"), e.description } });
            if (m_connectPending) {
                m_connectPending = false;
                fail(m_connectId, e.description);
            }
        });
        connect(m_client, &QXmppClient::messageReceived, this, &Peer::onMessage);
        connect(m_omemo, &QXmppOmemoManager::trustLevelsChanged, this, &Peer::onTrustLevelsChanged);
        connect(m_omemo, &QXmppOmemoManager::deviceAdded, this, [](const QString &jid, uint32_t dev) {
            event(QStringLiteral("device_added"), { { QStringLiteral("jid"), jid }, { QStringLiteral("device_id"), qint64(dev) } });
        });
        connect(m_omemo, &QXmppOmemoManager::deviceChanged, this, [](const QString &jid, uint32_t dev) {
            event(QStringLiteral("device_changed"), { { QStringLiteral("jid"), jid }, { QStringLiteral("device_id"), qint64(dev) } });
        });
        connect(m_omemo, &QXmppOmemoManager::deviceRemoved, this, [](const QString &jid, uint32_t dev) {
            event(QStringLiteral("device_removed"), { { QStringLiteral("jid"), jid }, { QStringLiteral("device_id"), qint64(dev) } });
        });

        m_connectId = id;
        m_connectPending = true;
        // In-memory storage: load() finds nothing, setUp() runs once connected.
        m_omemo->load().then(this, [this, config](bool loaded) {
            m_loaded = loaded;
            m_client->connectToServer(config);
        });
    }

    void onConnected()
    {
        event(QStringLiteral("connected"), { { QStringLiteral("jid"), m_client->configuration().jid() } });
        if (m_loaded || m_setUp) {
            return;
        }
        m_setUp = true;
        m_omemo->setUp().then(this, [this](bool ok) {
            m_connectPending = false;
            if (!ok) {
                fail(m_connectId, QStringLiteral("OMEMO setUp() failed; see log events"));
                return;
            }
            if (m_buildAfterSetUp) {
                m_omemo->setNewDeviceAutoSessionBuildingEnabled(true);
            }
            m_omemo->ownKey().then(this, [this](QByteArray &&key) {
                QJsonObject o {
                    { QStringLiteral("jid"), m_client->configuration().jidBare() },
                    { QStringLiteral("key_hex"), QString::fromLatin1(key.toHex()) },
                    { QStringLiteral("key_b64"), QString::fromLatin1(key.toBase64()) },
                };
                // The own device id, from the storage this peer owns (the
                // manager's public API does not expose it).
                m_omemoStorage->allData().then(this, [this, o](QXmppOmemoStorage::OmemoData &&data) mutable {
                    if (data.ownDevice) {
                        o.insert(QStringLiteral("device_id"), qint64(data.ownDevice->id));
                    }
                    if (m_buildAfterSetUp) {
                        // The devices announced during setUp(), for which no
                        // session (and so no key) was built.
                        QList<QString> jids = data.devices.keys();
                        jids.append(m_client->configuration().jidBare());
                        m_omemo->buildMissingSessions(jids);
                    }
                    event(QStringLiteral("ready"), o);
                    reply(m_connectId, true, o);
                });
            });
        });
    }

    void doOwnKey(const QJsonValue &id)
    {
        m_omemo->ownKey().then(this, [this, id](QByteArray &&key) {
            reply(id, true, {
                                { QStringLiteral("jid"), m_client->configuration().jidBare() },
                                { QStringLiteral("key_hex"), QString::fromLatin1(key.toHex()) },
                                { QStringLiteral("key_b64"), QString::fromLatin1(key.toBase64()) },
                            });
        });
    }

    void doKeys(const QJsonValue &id, const QJsonObject &cmd)
    {
        const auto jids = jidsFrom(cmd);
        if (jids.isEmpty()) {
            m_omemo->keys().then(this, [id](QHash<QXmpp::TrustLevel, QMultiHash<QString, QByteArray>> &&byLevel) {
                QJsonArray out;
                for (auto it = byLevel.cbegin(); it != byLevel.cend(); ++it) {
                    for (auto k = it.value().cbegin(); k != it.value().cend(); ++k) {
                        out.append(keyJson(k.key(), k.value(), it.key()));
                    }
                }
                reply(id, true, { { QStringLiteral("keys"), out } });
            });
        } else {
            m_omemo->keys(jids).then(this, [id](QHash<QString, QHash<QByteArray, QXmpp::TrustLevel>> &&byJid) {
                QJsonArray out;
                for (auto it = byJid.cbegin(); it != byJid.cend(); ++it) {
                    for (auto k = it.value().cbegin(); k != it.value().cend(); ++k) {
                        out.append(keyJson(it.key(), k.key(), k.value()));
                    }
                }
                reply(id, true, { { QStringLiteral("keys"), out } });
            });
        }
    }

    void doDevices(const QJsonValue &id, const QJsonObject &cmd)
    {
        const auto jids = jidsFrom(cmd);
        auto task = jids.isEmpty() ? m_omemo->devices() : m_omemo->devices(jids);
        task.then(this, [id](QVector<QXmppOmemoDevice> &&devices) {
            QJsonArray out;
            for (const auto &d : devices) {
                auto o = keyJson(d.jid(), d.keyId(), d.trustLevel());
                o.insert(QStringLiteral("label"), d.label());
                out.append(o);
            }
            reply(id, true, { { QStringLiteral("devices"), out } });
        });
    }

    // As Kaidan does after scanning a QR code: makeTrustDecisions() with the
    // scanned keys for authentication (or for distrusting).
    void doDecide(const QJsonValue &id, const QJsonObject &cmd, bool authenticate)
    {
        const auto jid = cmd.value(QStringLiteral("jid")).toString();
        const auto keys = keysFrom(cmd);
        if (jid.isEmpty() || keys.isEmpty()) {
            fail(id, QStringLiteral("need jid and key_hex or keys_hex"));
            return;
        }
        auto task = authenticate ? m_atm->makeTrustDecisions(NS_OMEMO2, jid, keys, {})
                                 : m_atm->makeTrustDecisions(NS_OMEMO2, jid, {}, keys);
        task.then(this, [id]() { reply(id, true); });
    }

    // A scanned Trust Message URI: one makeTrustDecisions() call with the
    // keys to authenticate and those to distrust, as Kaidan makes it.
    void doDecideBoth(const QJsonValue &id, const QJsonObject &cmd)
    {
        const auto jid = cmd.value(QStringLiteral("jid")).toString();
        QList<QByteArray> trust;
        QList<QByteArray> distrust;
        for (const auto &v : cmd.value(QStringLiteral("trust_hex")).toArray()) {
            trust.append(QByteArray::fromHex(v.toString().toLatin1()));
        }
        for (const auto &v : cmd.value(QStringLiteral("distrust_hex")).toArray()) {
            distrust.append(QByteArray::fromHex(v.toString().toLatin1()));
        }
        if (jid.isEmpty() || (trust.isEmpty() && distrust.isEmpty())) {
            fail(id, QStringLiteral("need jid and trust_hex or distrust_hex"));
            return;
        }
        m_atm->makeTrustDecisions(NS_OMEMO2, jid, trust, distrust).then(this, [id]() { reply(id, true); });
    }

    void doSendChat(const QJsonValue &id, const QJsonObject &cmd)
    {
        QXmppMessage message;
        message.setTo(cmd.value(QStringLiteral("jid")).toString());
        message.setBody(cmd.value(QStringLiteral("text")).toString());
        message.setType(QXmppMessage::Chat);
        // QXmppClient::send() does NOT encrypt (it sent plaintext in our first
        // run); sendSensitive() goes through the encryption extension (OMEMO).
        const bool plain = cmd.value(QStringLiteral("plain")).toBool(false);
        auto task = plain ? m_client->send(std::move(message)) : m_client->sendSensitive(std::move(message));
        task.then(this, [id](QXmpp::SendResult &&r) {
            if (auto *e = std::get_if<QXmppError>(&r)) {
                fail(id, e->description);
            } else {
                reply(id, true);
            }
        });
    }

    // ---- events -------------------------------------------------------------

    void onMessage(const QXmppMessage &message)
    {
        QJsonObject o {
            { QStringLiteral("from"), message.from() },
            { QStringLiteral("to"), message.to() },
            { QStringLiteral("type"), int(message.type()) },
            { QStringLiteral("encryption"), message.encryptionMethodNs() },
        };
        if (const auto meta = message.e2eeMetadata()) {
            o.insert(QStringLiteral("sender_key_hex"), QString::fromLatin1(meta->senderKey().toHex()));
            if (meta->sceTimestamp().isValid()) {
                o.insert(QStringLiteral("sce_time"), meta->sceTimestamp().toString(Qt::ISODate));
            }
        }
        if (const auto tm = message.trustMessageElement()) {
            QJsonArray owners;
            for (const auto &owner : tm->keyOwners()) {
                owners.append(QJsonObject {
                    { QStringLiteral("jid"), owner.jid() },
                    { QStringLiteral("trust"), keyListJson(owner.trustedKeys()) },
                    { QStringLiteral("distrust"), keyListJson(owner.distrustedKeys()) },
                });
            }
            o.insert(QStringLiteral("usage"), tm->usage());
            o.insert(QStringLiteral("tm_encryption"), tm->encryption());
            o.insert(QStringLiteral("key_owners"), owners);
            event(QStringLiteral("trust_message"), o);
            return;
        }
        if (message.body().isEmpty()) {
            return;
        }
        o.insert(QStringLiteral("body"), message.body());
        event(QStringLiteral("chat"), o);
    }

    void onTrustLevelsChanged(const QMultiHash<QString, QByteArray> &modified)
    {
        // Report the new level of every modified key.
        for (auto it = modified.cbegin(); it != modified.cend(); ++it) {
            const auto jid = it.key();
            const auto key = it.value();
            m_omemo->trustLevel(jid, key).then(this, [jid, key](QXmpp::TrustLevel level) {
                event(QStringLiteral("trust_changed"), keyJson(jid, key, level));
            });
        }
    }

    void onLog(QXmppLogger::MessageType type, const QString &text)
    {
        switch (type) {
        case QXmppLogger::WarningMessage:
            event(QStringLiteral("log"), { { QStringLiteral("level"), QStringLiteral("warning") }, { QStringLiteral("text"), text } });
            break;
        case QXmppLogger::SentMessage:
            summarizeSent(text);
            [[fallthrough]];
        case QXmppLogger::ReceivedMessage:
            if (m_logStanzas) {
                event(QStringLiteral("stanza"), { { QStringLiteral("dir"), type == QXmppLogger::SentMessage ? QStringLiteral("out") : QStringLiteral("in") }, { QStringLiteral("xml"), text } });
            }
            break;
        default:
            break;
        }
    }

    // One "omemo_sent" event per OMEMO-encrypted <message/> this device puts
    // on the wire: its shape and the number of <key/> elements per (jid, rid).
    static void summarizeSent(const QString &text)
    {
        if (!text.startsWith(QLatin1String("<message")) || !text.contains(QLatin1String("urn:xmpp:omemo:2"))) {
            return;
        }
        QDomDocument doc;
        if (!doc.setContent(text, true)) {
            return;
        }
        const auto msg = doc.documentElement();
        QJsonObject o {
            { QStringLiteral("to"), msg.attribute(QStringLiteral("to")) },
            { QStringLiteral("type"), msg.attribute(QStringLiteral("type")) },
            { QStringLiteral("has_id"), msg.hasAttribute(QStringLiteral("id")) },
        };
        QJsonArray children;
        for (auto c = msg.firstChildElement(); !c.isNull(); c = c.nextSiblingElement()) {
            children.append(c.tagName() + QLatin1Char(' ') + c.namespaceURI());
        }
        o.insert(QStringLiteral("children"), children);
        const auto body = msg.firstChildElement(QStringLiteral("body"));
        if (!body.isNull()) {
            o.insert(QStringLiteral("body"), body.text());
        }
        const auto enc = msg.firstChildElement(QStringLiteral("encrypted"));
        o.insert(QStringLiteral("has_payload"), !enc.firstChildElement(QStringLiteral("payload")).isNull());
        const auto header = enc.firstChildElement(QStringLiteral("header"));
        o.insert(QStringLiteral("sid"), header.attribute(QStringLiteral("sid")).toLongLong());
        QJsonArray keys;
        for (auto ks = header.firstChildElement(QStringLiteral("keys")); !ks.isNull(); ks = ks.nextSiblingElement(QStringLiteral("keys"))) {
            QMap<QString, int> perRid;
            QMap<QString, bool> kex;
            for (auto k = ks.firstChildElement(QStringLiteral("key")); !k.isNull(); k = k.nextSiblingElement(QStringLiteral("key"))) {
                perRid[k.attribute(QStringLiteral("rid"))] += 1;
                kex[k.attribute(QStringLiteral("rid"))] = kex.value(k.attribute(QStringLiteral("rid"))) || k.attribute(QStringLiteral("kex")) == QLatin1String("true");
            }
            for (auto it = perRid.cbegin(); it != perRid.cend(); ++it) {
                keys.append(QJsonObject {
                    { QStringLiteral("jid"), ks.attribute(QStringLiteral("jid")) },
                    { QStringLiteral("rid"), it.key().toLongLong() },
                    { QStringLiteral("count"), it.value() },
                    { QStringLiteral("kex"), kex.value(it.key()) },
                });
            }
        }
        o.insert(QStringLiteral("keys"), keys);
        event(QStringLiteral("omemo_sent"), o);
    }

    void quit()
    {
        if (m_client && m_client->isConnected()) {
            m_client->disconnectFromServer();
        }
        QTimer::singleShot(100, qApp, &QCoreApplication::quit);
    }

    QSocketNotifier *m_stdin = nullptr;
    QByteArray m_buffer;
    QXmppClient *m_client = nullptr;
    QXmppAtmTrustMemoryStorage *m_trustStorage = nullptr;
    QXmppOmemoMemoryStorage *m_omemoStorage = nullptr;
    QXmppAtmManager *m_atm = nullptr;
    QXmppOmemoManager *m_omemo = nullptr;
    QJsonValue m_connectId;
    bool m_connectPending = false;
    bool m_loaded = false;
    bool m_setUp = false;
    bool m_buildAfterSetUp = false;
    bool m_logStanzas = false;
};

int main(int argc, char **argv)
{
    QCoreApplication app(argc, argv);
    Peer peer;
    return app.exec();
}
