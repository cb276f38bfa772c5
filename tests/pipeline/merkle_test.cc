// Merkle tree tests: placeholder, being written.
