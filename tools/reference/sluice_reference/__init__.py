"""PyTorch reference implementations of sluice's four networks, and safetensors I/O."""
