//! persistence (in progress)
