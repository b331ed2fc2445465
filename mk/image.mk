# Router images and QEMU boots (docs/image.md).
#   make image BOARD=x86_64|x86_64-generic|arm64-virt|rpi4   build out/<board>/x0-<board>-<version>.img, manifest.json, sbom.cdx.json
#   make image LOCK=refresh                    resolve the newest Debian packages and rewrite image/locks/<board>.json
#   make qemu  BOARD=...                       boot the built image headless under TCG, web UI on 127.0.0.1
#   make run                                   deps + image + qemu for the default board, prints the URL
APT_PKGS += mmdebstrap uidmap arch-test squashfs-tools e2fsprogs dosfstools mtools fdisk kmod \
	grub-common grub-efi-amd64-bin qemu-system-x86 qemu-system-arm qemu-utils qemu-user-static \
	binfmt-support ovmf seabios qemu-efi-aarch64 python3

.PHONY: image qemu run image-boards
image: deps
	$(PY) -m image.pipeline build --board $(BOARD) $(if $(filter refresh,$(LOCK)),--refresh-lock)

qemu: deps
	$(PY) -m image.qemu --board $(BOARD)

run: deps image qemu

image-boards:
	@$(PY) -m image.pipeline list

.PHONY: bench-image
bench-image: deps
	$(PY) bench/image.py
