//! Property tests for the whole module (filled in below).
