#!/bin/sh
# Run as root inside the runtime root filesystem once its packages are installed: by the
# Dockerfile's runtime stage and by .ci/rootfs.sh, so the image and the tests' copy agree.
set -eu

# The runner mounts the checkout at /github/workspace owned by the runner user, while the
# action runs as root: without this, git refuses it as "dubious ownership" (actions/runner#2033).
# Checkouts may also sit in subdirectories, hence the wildcard; the container only ever sees
# the job's own checkout.
git config --system --add safe.directory '*'
