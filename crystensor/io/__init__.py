"""Reading and writing files: tensors (JSON), structures, atomic writes."""
