#!/usr/bin/env bash
# gpu_bundle.sh OUT.tar.xz [BUILD_DIR] - pack a build's programs with the shared libraries and
# the Open MPI runtime they need, to run them on a machine that has the NVIDIA driver but not
# this build's Debian packages (a GPU node with another OS image, say). There:
#   mkdir -p /tmp/pai && tar xf OUT.tar.xz -C /tmp/pai && . /tmp/pai/env.sh
#   python3 tests/test_gpu_forward.py --bin /tmp/pai/bin     (from the repository; or
#   bench/run_gpu.sh, which does this and the benchmarks)
# cuBLASLt, cuDNN and NCCL are not packed (hundreds of MiB, opened at run time): env.sh finds
# the lib folders of pip's nvidia-cublas, -cudnn and -nccl packages (as PyTorch installs them)
# when python3 has them. glibc and libstdc++ are taken from the machine (which must be at least
# as new as the build's). The packed libraries are seen by the bundle's programs alone: each
# entry of bin/ is a wrapper that runs the real program in libexec/ with them in front of
# LD_LIBRARY_PATH, so Python (the tests' references, PyTorch) keeps loading its own libgomp,
# libz and the like, not the build machine's.
set -euo pipefail
out=${1:?usage: gpu_bundle.sh OUT.tar.xz [BUILD_DIR]}
build=${2:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

progs=(promoterai pmodel ppreprocess psynth ptrain pfinetune pprecompute train_step loader_dump
       comm_check layer_check bench_forward bench_train cone_flops
       promoterai_emul pmodel_emul ptrain_emul pfinetune_emul pprecompute_emul train_step_emul
       comm_check_emul layer_check_emul bench_train_emul)
mkdir -p "$stage/bin" "$stage/libexec" "$stage/lib"
# wrap DIR NAME: DIR/NAME runs libexec/NAME with the bundle's libraries in front.
wrap() {
  cat > "$1/$2" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="\${PAI_BUNDLE_LIBS:?source the bundle's env.sh first}\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" \\
  exec "\$PAI_BUNDLE/libexec/$2" "\$@"
EOF
  chmod +x "$1/$2"
}
for p in "${progs[@]}"; do
  [ -x "$build/$p" ] || { echo "gpu_bundle: $build/$p is missing (build first)" >&2; exit 1; }
  cp "$build/$p" "$stage/libexec/"
  wrap "$stage/bin" "$p"
done

# Open MPI's runtime, laid out under a prefix that OPAL_PREFIX relocates (ompi_info --path all):
# mpirun and orted in bin/ (wrappers, like the programs), the plugins under lib/.../openmpi3,
# the help texts in share/.
ompi_lib=$(ompi_info --path libdir --parsable | sed 's/^.*libdir://')
ompi_pkglib=$(ompi_info --path pkglibdir --parsable | sed 's/^.*pkglibdir://')
ompi_data=$(ompi_info --path pkgdatadir --parsable | sed 's/^.*pkgdatadir://')
prefix=$(ompi_info --path prefix --parsable | sed 's/^.*prefix://')
mkdir -p "$stage/ompi/bin" "$stage/ompi/${ompi_pkglib#"$prefix"/}" "$stage/ompi/${ompi_data#"$prefix"/}"
cp -L "$(command -v orted)" "$stage/libexec/orted"
cp -L "$(command -v orterun)" "$stage/libexec/mpirun"
wrap "$stage/ompi/bin" orted
wrap "$stage/ompi/bin" mpirun
cp -L "$ompi_pkglib"/*.so "$stage/ompi/${ompi_pkglib#"$prefix"/}/"
cp -rL "$ompi_data"/. "$stage/ompi/${ompi_data#"$prefix"/}/"
cp -L "$ompi_lib"/lib*.so* "$stage/lib/" 2>/dev/null || true

# Every shared library the programs, orted and the plugins load, except glibc's and the C++
# runtime (the machine's own) and the CUDA driver.
skip='^(libc|libm|libdl|libpthread|librt|libutil|ld-linux-x86-64|libstdc\+\+|libgcc_s|libcuda|libnvidia)[.-]'
for f in "$stage"/libexec/* "$stage"/ompi/"${ompi_pkglib#"$prefix"/}"/*.so; do
  ldd "$f" 2>/dev/null | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  base=$(basename "$lib")
  [[ $base =~ $skip ]] && continue
  cp -nL "$lib" "$stage/lib/$base"
done

cat > "$stage/env.sh" <<'EOF'
# Source me: the bundle's programs and Open MPI on PATH. PAI_BUNDLE_LIBS (the bundle's libraries,
# then pip's cuBLASLt, cuDNN and NCCL folders) is what the wrappers in bin/ put in front of
# LD_LIBRARY_PATH; the shell's own LD_LIBRARY_PATH is left alone.
PAI_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PAI_BUNDLE
export PATH="$PAI_BUNDLE/bin:$PAI_BUNDLE/ompi/bin:$PATH"
export OPAL_PREFIX="$PAI_BUNDLE/ompi"
export OMPI_MCA_mca_base_component_show_load_errors=0
PAI_BUNDLE_LIBS="$PAI_BUNDLE/lib"
nv=$(python3 -c 'import os, nvidia; print(" ".join(os.path.join(p, d, "lib") for p in nvidia.__path__ for d in ("cublas", "cudnn", "nccl", "cu13")))' 2>/dev/null || true)
for d in $nv; do [ -d "$d" ] && PAI_BUNDLE_LIBS="$PAI_BUNDLE_LIBS:$d"; done
export PAI_BUNDLE_LIBS
EOF
tar -C "$stage" -cJf "$out" .
echo "gpu_bundle: wrote $out ($(du -h "$out" | cut -f1)): ${#progs[@]} programs, $(ls "$stage/lib" | wc -l) libraries"
