"""Models in Flax NNX: the decoder LM, vision and text towers, the projector and MLLM, their FLOPs, the mesh and
logical-axis sharding rules, and the Hugging Face / big_vision / safetensors formats they load and save."""
