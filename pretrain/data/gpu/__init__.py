"""The GPU data path, split by job: host-side plans and parameters (:mod:`.plan`), PIL-exact
resampling (:mod:`.resample`), pointwise / colour / affine ops with their plain-torch references
(:mod:`.ops`), the Triton kernels (:mod:`.kernels`), :class:`.augment.DeviceAugment`, decoding
(:mod:`.decode`, :mod:`.nvjpeg`) and the prefetcher (:mod:`.prefetch`). Design notes and measurements:
docs/gpu_data_path.md."""
