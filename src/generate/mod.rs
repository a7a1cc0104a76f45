//! Labelled scenario capture generator. HELPER-OWNED.
