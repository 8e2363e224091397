"""What is computed: the sparse-model graph IR, the zoo, importers, patterns and lowering."""
