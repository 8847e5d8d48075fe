"""Getting audio in: decoding, sources, level, the ring buffer and the hop scheduler."""
