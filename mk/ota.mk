# Updates (docs/ota.md): RAUC makes and checks bundles on the build host (the image has its own RAUC).
#   make bench-ota    bench/ota.py: mesh distribution vs. star, resume, install to marked good in QEMU
APT_PKGS += rauc

.PHONY: bench-ota
bench-ota: deps
	$(PY) bench/ota.py
