"""From a reply to a built kernel: the files it holds, the kernel-builder layout and build.toml,
the policy checks, the toolchain, and the build."""
