"""Ask a model for a kernel: the prompt, the providers behind one protocol, the replies (each
asked once), the cassettes that record them, and what they cost."""
