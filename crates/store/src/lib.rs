//! SQLite persistence for the ATM engine and OMEMO sessions.
