//! diva-serve
