# Router images and QEMU boots (docs/image.md).
#   make image BOARD=x86_64|x86_64-generic|arm64-virt|rpi4   build out/<board>/x0-<board>-<version>.img, manifest.json, sbom.cdx.json
#   make image LOCK=refresh                    resolve the newest Debian packages and rewrite image/locks/<board>.json
#   make qemu  BOARD=...                       boot the built image headless under TCG, web UI on 127.0.0.1
#   make run                                   deps-run (no test extras) + image, then the VM joined to a mesh of 5 x0node neighbours in
#                                              namespaces (image/run.py); prints URL, setup code, fault commands
APT_PKGS += mmdebstrap uidmap arch-test squashfs-tools e2fsprogs dosfstools mtools fdisk kmod \
	grub-common grub-efi-amd64-bin qemu-system-x86 qemu-system-arm qemu-utils qemu-user-static \
	binfmt-support ovmf seabios qemu-efi-aarch64 python3 llvm

.PHONY: image qemu run image-boards
image: deps bpf
	$(PY) -m image.pipeline build --board $(BOARD) $(if $(filter refresh,$(LOCK)),--refresh-lock)

qemu: deps
	$(PY) -m image.qemu --board $(BOARD)

# Ctrl-C or SIGTERM stops the VM and removes the neighbours (GNU make passes SIGTERM on to the recipe).
# The BPF objects (`bpf`) are part of the image: without them the router has no XDP telemetry.
# The image is rebuilt only when its sources changed since the last complete build (--reuse), without
# the update bundle, which a boot does not use (`make image` makes it), and with a gzip root slot
# (--compression gzip: a sixth of xz's CPU to squash, quicker to read under TCG; slots 1.5x the
# board's). An xz image of the same sources (`make image`) is taken as it is.
run: deps-run bpf
	$(PY) -m image.pipeline build --board $(BOARD) --reuse --no-bundle --compression gzip
	$(PY) -m image.run --board $(BOARD)

image-boards:
	@$(PY) -m image.pipeline list

.PHONY: bench-image
bench-image: deps
	$(PY) bench/image.py
