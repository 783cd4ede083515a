"""Patent embeddings, search (BM25, dense, hybrid) and embedding evaluation."""
