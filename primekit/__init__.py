"""primekit: reinforcement learning of LLM reasoning with implicit process rewards (PRIME)."""

__version__ = "0.1.0"
