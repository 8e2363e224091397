"""Co-design search over sparsity pattern x mapping x hardware: the space, the search, the results store
and the Ray scale-out. Sits above the simulator (hwsim) and below the CLI."""
