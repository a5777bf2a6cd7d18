"""hvae_lite: a notebook-first teaching kit for deep hierarchical VAEs (the Matryoshka network)."""
