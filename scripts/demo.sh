#!/usr/bin/env bash
# make demo: two demo tenants (alice, bob) with rootfs built from this
# host's binaries, their keys and a config, then the gateway in the
# foreground on 127.0.0.1:2222.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=$PWD/demo
# Tenant trees live where the tenants' unprivileged ids can reach them
# (a clone under /root, mode 0700, would not do).
state=${JAILGATE_DEMO_STATE:-/var/lib/jailgate-demo}
port=${JAILGATE_DEMO_PORT:-2222}
mkdir -p "$demo" "$state/rootfs"
chmod 755 "$state" "$state/rootfs"

for u in alice bob; do
  if [ ! -e "$state/rootfs/$u/etc/jailgate-rootfs" ]; then
    echo "building $state/rootfs/$u from this host's binaries..."
    bin/jailgate rootfs from-host -q "$state/rootfs/$u"
  fi
  [ -f "$demo/$u" ] || ssh-keygen -q -t ed25519 -N '' -C "$u@jailgate-demo" -f "$demo/$u"
done

cat > "$demo/jailgate.yaml" <<YAML
# Written by make demo.
listen: "127.0.0.1:$port"
state_dir: $state/state
host_key: $state/state/ssh_host_ed25519_key
defaults:
  shell: /bin/bash
  hostname: "{user}-lab"
  limits: { memory: 512MiB, pids: 256, cpu: 1.0 }
users:
  alice:
    keys_file: $demo/alice.pub
    rootfs: $state/rootfs/alice
  bob:
    keys_file: $demo/bob.pub
    rootfs: $state/rootfs/bob
YAML

bin/jailgate check --config "$demo/jailgate.yaml"
cat <<MSG

jailgate demo: from another terminal, paste

    ssh -i demo/alice -p $port -o UserKnownHostsFile=demo/known_hosts -o StrictHostKeyChecking=accept-new alice@127.0.0.1

(demo/bob for bob; append a command to run it instead of a shell). Ctrl-C stops the gateway.

MSG
exec bin/jailgate serve --config "$demo/jailgate.yaml"
