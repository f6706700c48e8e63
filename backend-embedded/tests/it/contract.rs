//! The shared contract suites, run against the embedded backend.

checkout::backend_contract_tests!(async { embedded_backend::EmbeddedStore::backend() });
