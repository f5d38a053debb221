//! Trust Messages (XEP-0434): the `<trust-message xmlns='urn:xmpp:tm:1'/>`
//! element and the Trust Message URI.
