# eBPF/XDP telemetry: CO-RE objects built from bpf/*.bpf.c against this machine's BTF.
# `make bpf` -> build/bpf/<name>.bpf.o (DWARF stripped, BTF kept) + build/bpf/manifest.json
# ({"files": {"build/bpf/<name>.bpf.o": "<sha256>"}}), which the validator checks before loading.
APT_PKGS += clang llvm libbpf-dev bpftool libelf-dev graphviz
TEST_PREREQS += bpf
BENCHES += bench/xdp.py

BPF_CLANG ?= clang
BPF_STRIP ?= llvm-strip
BPF_OUT := build/bpf
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(BPF_OUT)/%.bpf.o,$(BPF_SRCS))
# -fdebug-prefix-map: source paths in BTF line info are relative, so a checkout's location does not
# change the objects (or their manifest digests).
BPF_CFLAGS := -O2 -g -target bpf -mcpu=v3 -D__TARGET_ARCH_x86 -Wall -Werror -I$(BPF_OUT) -Ibpf \
	-fdebug-prefix-map=$(CURDIR)=.

.PHONY: bpf bpf-clean
bpf: $(BPF_OUT)/manifest.json

$(BPF_OUT)/vmlinux.h:
	@mkdir -p $(BPF_OUT)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_OUT)/%.bpf.o: bpf/%.bpf.c bpf/x0_common.h bpf/x0_sock.h $(BPF_OUT)/vmlinux.h mk/bpf.mk
	$(BPF_CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp
	$(BPF_STRIP) -g $@.tmp
	mv $@.tmp $@

$(BPF_OUT)/manifest.json: $(BPF_OBJS)
	python3 -c 'import hashlib, json, sys; print(json.dumps({"files": {p: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in sorted(sys.argv[1:])}}, indent=2))' $(BPF_OBJS) > $@.tmp
	mv $@.tmp $@

bpf-clean:
	rm -rf $(BPF_OUT)
