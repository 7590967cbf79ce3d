#!/usr/bin/env bash
# Creates the Spillway cluster on k3d and deploys everything, in this order:
# a check that this host can hold MongoDB to 100 IOPS, host kernel tuning, the
# k3d cluster, Knative Serving + Kourier, Knative Eventing + the MT channel
# broker, eventing-redis's source and sink, Redis, MongoDB (a Docker container
# with a 100 IOPS disk limit), the secrets, the image (built and imported), the
# functions and the eventing wiring; then it waits until all are ready and
# prints ingest's URLs.
#
#   cluster/up.sh [--dry-run] [--skip-sysctl] [--allow-unlimited-iops]
#
# --dry-run               print the exact command plan, one command a line; run nothing
# --skip-sysctl           leave the host's kernel settings alone
# --allow-unlimited-iops  when this host cannot enforce the 100 IOPS limit
#                         (cgroup v1, no throttleable disk), deploy anyway with
#                         MongoDB unlimited, and say so loudly; without it up.sh
#                         stops before creating anything
# Environment:
#   MONGO_IOPS_DEVICE     block device to limit (default: the disk holding
#                         Docker's data root, found by cluster/iops-device.sh)
#   SPILLWAY_SECRETS_ENV  secrets file (default .data/cluster/secrets.env)
#   SPILLWAY_SUBNET       the cluster network, an IPv4 /16 no Docker network
#                         overlaps (default 172.28.0.0/16, k3d.yaml's); MongoDB
#                         gets its .200.10 address
# Linux hosts only (WSL2 included); elsewhere it stops before doing anything.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=lib.sh source-path=SCRIPTDIR
source "${ROOT}/cluster/lib.sh"
require_linux up.sh
cd "${ROOT}"

# Pinned releases: one Knative release for every component, so they match.
KNATIVE_VERSION="knative-v1.22.1"
SERVING_RELEASE="https://github.com/knative/serving/releases/download/${KNATIVE_VERSION}"
KOURIER_RELEASE="https://github.com/knative-extensions/net-kourier/releases/download/${KNATIVE_VERSION}"
EVENTING_RELEASE="https://github.com/knative/eventing/releases/download/${KNATIVE_VERSION}"
REDIS_RELEASE="https://github.com/knative-extensions/eventing-redis/releases/download/${KNATIVE_VERSION}"

CLUSTER="spillway"
NAMESPACE="spillway"
# dev.local is in Knative's registries-skipping-tag-resolving, so Knative uses
# the imported image as is instead of asking a registry for its digest.
IMAGE="dev.local/spillway:0.1.0"
MONGO_IMAGE="mongo:8.0.4"
MONGO_CONTAINER="spillway-mongodb"
MONGO_VOLUME="spillway-mongodb-data"
# k3d.yaml's subnet, and MongoDB's fixed address in it (cluster/mongodb.yaml's
# EndpointSlice points there; another subnet patches it).
DEFAULT_SUBNET="172.28.0.0/16"
SUBNET="${SPILLWAY_SUBNET:-${DEFAULT_SUBNET}}"
if ! [[ ${SUBNET} =~ ^([0-9]{1,3})\.([0-9]{1,3})\.0\.0/16$ ]] ||
  ((BASH_REMATCH[1] > 255 || BASH_REMATCH[2] > 255)); then
  echo "up.sh: SPILLWAY_SUBNET must be an IPv4 /16 such as 10.213.0.0/16, got '${SUBNET}'" >&2
  exit 2
fi
MONGO_IP="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.200.10"
# The node's I/O budget, as in the reference problem (reads and writes each).
MONGO_IOPS=100
KOURIER_HOST_PORT=8180
NODEPORT_HOST_PORT=30000
SECRETS_ENV="${SPILLWAY_SECRETS_ENV:-.data/cluster/secrets.env}"
WAIT_TIMEOUT="--timeout=600s"

SKIP_SYSCTL=0
ALLOW_UNLIMITED_IOPS=0
for arg in "$@"; do
  case "${arg}" in
    --dry-run) DRY_RUN=1 ;;
    --skip-sysctl) SKIP_SYSCTL=1 ;;
    --allow-unlimited-iops) ALLOW_UNLIMITED_IOPS=1 ;;
    -h | --help)
      sed -n '2,25p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *)
      echo "up.sh: unknown argument '${arg}' (known: --dry-run, --skip-sysctl, --allow-unlimited-iops)" >&2
      exit 2
      ;;
  esac
done

SUDO=()
if [[ ${EUID} -ne 0 ]]; then
  SUDO=(sudo)
fi

preflight() {
  require_tools docker k3d kubectl
  if ! docker info >/dev/null 2>&1; then
    echo "up.sh: cannot reach the Docker engine; start Docker and retry" >&2
    exit 1
  fi
  if k3d cluster get "${CLUSTER}" >/dev/null 2>&1; then
    echo "up.sh: cluster '${CLUSTER}' already exists; run cluster/down.sh first" >&2
    exit 1
  fi
}

# An IPv4 CIDR as "first last" addresses, as integers.
cidr_range() {
  local ip="${1%/*}" bits="${1#*/}" a b c d
  IFS=. read -r a b c d <<<"${ip}"
  local start=$(((a << 24) | (b << 16) | (c << 8) | d))
  local size=$((1 << (32 - bits)))
  start=$((start & ~(size - 1)))
  echo "${start} $((start + size - 1))"
}

# k3d makes its network with SUBNET; Docker refuses it ("Pool overlaps") when
# another network holds addresses in it, as networks taken from Docker's default
# pools (172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16) may.
check_subnet() {
  local ids inspected name cidrs cidr mine theirs
  if [[ ${DRY_RUN} -eq 1 ]]; then
    print_cmd docker network ls --quiet
    print_cmd docker network inspect --format '{{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}' '<ids>'
    return
  fi
  ids="$(run_capture docker network ls --quiet)"
  [[ -n ${ids} ]] || return 0
  # shellcheck disable=SC2086 # one word per network id
  inspected="$(run_capture docker network inspect --format '{{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}' ${ids})"
  read -r -a mine <<<"$(cidr_range "${SUBNET}")"
  while read -r name cidrs; do
    for cidr in ${cidrs}; do
      [[ ${cidr} =~ ^[0-9.]+/[0-9]+$ ]] || continue # IPv6
      read -r -a theirs <<<"$(cidr_range "${cidr}")"
      if ((theirs[0] <= mine[1] && mine[0] <= theirs[1])); then
        echo "up.sh: the cluster's subnet ${SUBNET} overlaps Docker network '${name}' (${cidr});" \
          "set SPILLWAY_SUBNET to a free /16 (e.g. SPILLWAY_SUBNET=10.213.0.0/16) and retry" >&2
        exit 1
      fi
    done
  done <<<"${inspected}"
}

# MongoDB's 100 IOPS limit only holds when
# 1. Docker runs containers under cgroup v2. Under cgroup v1 the blkio throttle
#    only holds I/O a process issues itself (reads, O_DIRECT writes); buffered
#    writes are written back later by the kernel's flusher threads, outside the
#    container's cgroup, unthrottled (opencontainers/runtime-spec
#    config-linux.md, blockIO: "I/O throttling settings in cgroup v1 apply only
#    to Direct I/O"); cgroup v2 charges writeback to the cgroup that dirtied
#    the pages.
#    WiredTiger writes its data files and its journal buffered, then fsyncs,
#    so on cgroup v1 whatever the flusher writes back before the fsync passes
#    the limit: it would not be a real one.
# 2. the device is one the kernel throttles: a whole disk or a device-mapper
#    device, never a partition (cluster/iops-device.sh).
# Checked before anything is created. Sets IOPS_DEVICE: the device to limit, or
# "" when the limit cannot hold and --allow-unlimited-iops was given.
IOPS_DEVICE=""
check_iops_host() {
  local version target
  if [[ ${DRY_RUN} -eq 1 ]]; then
    print_cmd docker info --format '{{.CgroupVersion}}'
    if [[ -n ${MONGO_IOPS_DEVICE:-} ]]; then
      print_cmd cluster/iops-device.sh "${MONGO_IOPS_DEVICE}"
      IOPS_DEVICE="${MONGO_IOPS_DEVICE}"
    else
      print_cmd docker info --format '{{.DockerRootDir}}'
      print_cmd cluster/iops-device.sh '<DockerRootDir>'
      IOPS_DEVICE="<the device cluster/iops-device.sh prints>"
    fi
    return
  fi
  version="$(run_capture docker info --format '{{.CgroupVersion}}')"
  if [[ ${version} != 2 ]]; then
    iops_limit_impossible "Docker runs containers under cgroup v${version:-?}, where the IOPS limit misses buffered writes the kernel writes back, as it does WiredTiger's; a host with cgroup v2 enforces it"
    return
  fi
  target="${MONGO_IOPS_DEVICE:-}"
  if [[ -n ${target} && ! -e ${target} ]]; then
    # Docker runs elsewhere (e.g. in Docker Desktop's VM): the device cannot be
    # checked here; Docker itself refuses a partition when MongoDB starts.
    echo "up.sh: ${target} is not on this host; limiting it as given" >&2
    IOPS_DEVICE="${target}"
    return
  fi
  if [[ -z ${target} ]]; then
    target="$(run_capture docker info --format '{{.DockerRootDir}}')"
  fi
  if ! IOPS_DEVICE="$(run_capture cluster/iops-device.sh "${target}")"; then
    IOPS_DEVICE=""
    iops_limit_impossible "no disk the kernel can throttle was found for ${target}; set MONGO_IOPS_DEVICE to the whole disk or device-mapper device holding Docker's data"
  fi
}

iops_limit_unenforced() {
  printf '\nup.sh: WARNING: MongoDB runs WITHOUT its %s IOPS limit (--allow-unlimited-iops).\n' \
    "${MONGO_IOPS}" >&2
  printf 'up.sh: WARNING: write throughput and latency measured here are not those of the budget.\n\n' >&2
}

iops_limit_impossible() {
  echo "up.sh: MongoDB's ${MONGO_IOPS} IOPS limit would not hold on this host: $1." >&2
  if [[ ${ALLOW_UNLIMITED_IOPS} -eq 0 ]]; then
    echo "up.sh: stopping before anything is created; pass --allow-unlimited-iops to deploy with MongoDB unlimited" >&2
    exit 1
  fi
  iops_limit_unenforced
}

# The reference report hit EOF errors from socket exhaustion at 10,000
# simultaneous connections: somaxconn lengthens the accept backlog for the
# handshake burst, and tcp_tw_reuse with a wide ip_local_port_range lets one
# host open and recycle 10,000+ outgoing connections. All three are per network
# namespace: they tune this host's own (a load generator running here), not
# the k3d node and load-balancer containers, which keep their own defaults.
# These are runtime settings: a reboot undoes them.
tune_kernel() {
  run "${SUDO[@]}" sysctl -w net.core.somaxconn=65535
  run "${SUDO[@]}" sysctl -w net.ipv4.tcp_tw_reuse=1
  run "${SUDO[@]}" sysctl -w "net.ipv4.ip_local_port_range=1024 65535"
}

install_serving() {
  run kubectl apply -f "${SERVING_RELEASE}/serving-crds.yaml"
  run kubectl wait --for=condition=Established --all crd "${WAIT_TIMEOUT}"
  run kubectl apply -f "${SERVING_RELEASE}/serving-core.yaml"
  run kubectl apply -f "${KOURIER_RELEASE}/kourier.yaml"
  run kubectl patch configmap/config-network -n knative-serving --type merge \
    --patch '{"data":{"ingress-class":"kourier.ingress.networking.knative.dev"}}'
  # <service>.<namespace>.127.0.0.1.sslip.io resolves to this host. Routes of
  # eventing-redis's sink receivers get the cluster domain instead, which makes
  # them cluster-local: the receiver is a Knative Service the sink controller
  # creates with no visibility label and never updates
  # (pkg/sink/reconciler/streamsink/resources/receiver.go, pkg/reconciler/kservice.go),
  # so public it would let anyone XADD into the dead-letter stream. Its labels
  # (streamsink/resources/labels.go) reach its Route, and a selector under
  # svc.cluster.local in config-domain is Serving's own way to keep matching
  # Routes in the cluster (serving config/core/configmaps/domain.yaml).
  run kubectl patch configmap/config-domain -n knative-serving --type merge \
    --patch '{"data":{"127.0.0.1.sslip.io":"","svc.cluster.local":"selector:\n  eventing.knative.dev/sink: redisstream-sink-controller\n"}}'
  run kubectl wait --for=condition=Available deployment --all -n knative-serving "${WAIT_TIMEOUT}"
  run kubectl wait --for=condition=Available deployment --all -n kourier-system "${WAIT_TIMEOUT}"
}

install_eventing() {
  run kubectl apply -f "${EVENTING_RELEASE}/eventing-crds.yaml"
  run kubectl wait --for=condition=Established --all crd "${WAIT_TIMEOUT}"
  run kubectl apply -f "${EVENTING_RELEASE}/eventing-core.yaml"
  run kubectl apply -f "${EVENTING_RELEASE}/in-memory-channel.yaml"
  run kubectl apply -f "${EVENTING_RELEASE}/mt-channel-broker.yaml"
  run kubectl wait --for=condition=Available deployment --all -n knative-eventing "${WAIT_TIMEOUT}"
  run kubectl apply -f "${REDIS_RELEASE}/redis-source.yaml"
  run kubectl apply -f "${REDIS_RELEASE}/redis-sink.yaml"
  run kubectl wait --for=condition=Established --all crd "${WAIT_TIMEOUT}"
  run kubectl apply -f eventing/config-redis.yaml
  run kubectl apply -f eventing/redisstreamsink-addressable-resolver.yaml
  # The source release's tls-secret (config/source/tls-secret.yaml) holds a
  # placeholder certificate with no body. The controller reads it once, at start
  # (pkg/source/reconciler/streamsource/controller.go), and passes it to every
  # adapter, whose connection pool panics when it cannot parse it
  # (pkg/source/adapter/adapter.go, newPool): the source never becomes Ready.
  # Emptying it is no way out: updateTLSSecret (streamsource.go) dereferences the
  # nil config GetTLSSecret returns for an empty TLS_CERT and the controller
  # crashes. Deleted, it is skipped (NotFound) and the adapters dial plain TCP,
  # as Spillway's in-cluster Redis needs. The restart makes the controller read
  # the Secret's absence; it comes before any RedisStreamSource exists.
  # (The sink's receiver uses TLS only for an address with a password,
  # pkg/sink/receiver/receiver.go, so its placeholder is harmless here.)
  run kubectl -n knative-sources delete secret tls-secret --ignore-not-found
  run kubectl -n knative-sources rollout restart statefulset/redis-controller-manager
  # eventing-redis's controllers are StatefulSets (config/source/500-controller.yaml,
  # config/sink/500-controller.yaml): their namespaces hold no Deployment for
  # `kubectl wait deployment --all` to find, and a StatefulSet has no Available
  # condition, so each is waited for by its rollout.
  run kubectl -n knative-sources rollout status statefulset/redis-controller-manager "${WAIT_TIMEOUT}"
  run kubectl -n knative-sinks rollout status statefulset/redis-controller-manager "${WAIT_TIMEOUT}"
}

deploy_redis() {
  run kubectl apply -f cluster/namespace.yaml
  run kubectl apply -f cluster/redis.yaml
  run kubectl -n "${NAMESPACE}" rollout status statefulset/redis "${WAIT_TIMEOUT}"
}

deploy_mongodb() {
  local limit=()
  if [[ -n ${IOPS_DEVICE} ]]; then
    limit=(--device-read-iops "${IOPS_DEVICE}:${MONGO_IOPS}"
      --device-write-iops "${IOPS_DEVICE}:${MONGO_IOPS}")
  fi
  run docker volume create "${MONGO_VOLUME}"
  run docker run --detach --name "${MONGO_CONTAINER}" --restart unless-stopped \
    --network "k3d-${CLUSTER}" --ip "${MONGO_IP}" \
    "${limit[@]}" \
    --volume "${MONGO_VOLUME}:/data/db" \
    "${MONGO_IMAGE}" --bind_ip_all --wiredTigerCacheSizeGB 0.5
  run kubectl apply -f cluster/mongodb.yaml
  if [[ ${SUBNET} != "${DEFAULT_SUBNET}" ]]; then
    run kubectl -n "${NAMESPACE}" patch endpointslice mongodb-1 --type json \
      --patch "[{\"op\":\"replace\",\"path\":\"/endpoints/0/addresses/0\",\"value\":\"${MONGO_IP}\"}]"
  fi
}

# Fills an empty key of the secrets file with a fresh random token, written
# straight into the file (never printed).
fill_token() {
  local name=$1
  if [[ ${DRY_RUN} -eq 1 ]]; then
    print_cmd sed -i "s/^${name}=\$/${name}=<openssl rand -hex 32>/" "${SECRETS_ENV}"
  else
    require_tools openssl
    printf '+ %s\n' "fill ${name} in ${SECRETS_ENV} with a random token" >&2
    sed -i "s/^${name}=\$/${name}=$(openssl rand -hex 32)/" "${SECRETS_ENV}"
  fi
}

# A secrets file made before receipts has no RECEIPT_SECRET line (it is
# added, after a line break when the file's last line has none) or an empty
# one: either way it gets a fresh token (ingest reads it from the Secret). A
# RECEIPT_SECRET with a value is left alone.
add_receipt_secret() {
  grep -q '^RECEIPT_SECRET=.' "${SECRETS_ENV}" && return 0
  if ! grep -q '^RECEIPT_SECRET=$' "${SECRETS_ENV}"; then
    if [[ ${DRY_RUN} -eq 1 ]]; then
      print_cmd "append RECEIPT_SECRET= to ${SECRETS_ENV}"
    else
      if [[ -s ${SECRETS_ENV} && -n $(tail -c 1 "${SECRETS_ENV}") ]]; then
        printf '\n' >>"${SECRETS_ENV}"
      fi
      printf 'RECEIPT_SECRET=\n' >>"${SECRETS_ENV}"
    fi
  fi
  fill_token RECEIPT_SECRET
}

# The Secret comes from a file outside git. A missing file is made from the
# example with a fresh API key, replay key and receipt secret; an existing one
# gets a receipt secret when it has none (add_receipt_secret).
create_secrets() {
  local name
  if [[ ! -f ${SECRETS_ENV} ]]; then
    run install -D -m 600 knative/secrets.example.env "${SECRETS_ENV}"
    for name in INGEST_API_KEYS INGEST_REPLAY_KEYS RECEIPT_SECRET; do
      fill_token "${name}"
    done
  else
    add_receipt_secret
  fi
  run kubectl -n "${NAMESPACE}" delete secret spillway-secrets --ignore-not-found
  run kubectl -n "${NAMESPACE}" create secret generic spillway-secrets \
    "--from-env-file=${SECRETS_ENV}"
}

build_image() {
  run docker build --tag "${IMAGE}" --file Dockerfile .
  run k3d image import "${IMAGE}" --cluster "${CLUSTER}"
}

deploy_spillway() {
  run kubectl apply -k knative
  run kubectl -n "${NAMESPACE}" wait --for=condition=Ready ksvc/ingest ksvc/persist "${WAIT_TIMEOUT}"
  run kubectl apply -k eventing
  run kubectl -n "${NAMESPACE}" wait --for=condition=Ready broker/spillway \
    redisstreamsinks/spillway-dead-letters redisstreamsource/spillway-events trigger/persist \
    "${WAIT_TIMEOUT}"
}

print_urls() {
  local get_url=(kubectl -n "${NAMESPACE}" get ksvc ingest --output 'jsonpath={.status.url}')
  if [[ ${DRY_RUN} -eq 1 ]]; then
    print_cmd "${get_url[@]}"
  else
    local url
    url="$(run_capture "${get_url[@]}")"
    echo "ingest via Kourier:  ${url}:${KOURIER_HOST_PORT}/events"
    echo "ingest via NodePort: http://localhost:${NODEPORT_HOST_PORT}/events"
    echo "API key: INGEST_API_KEYS in ${SECRETS_ENV} (the dead-letter replay's: INGEST_REPLAY_KEYS)"
    if [[ -z ${IOPS_DEVICE} ]]; then
      iops_limit_unenforced
    fi
  fi
}

if [[ ${DRY_RUN} -eq 0 ]]; then
  preflight
fi
check_subnet
check_iops_host
if [[ ${SKIP_SYSCTL} -eq 0 ]]; then
  tune_kernel
fi
run k3d cluster create --config cluster/k3d.yaml --subnet "${SUBNET}"
install_serving
install_eventing
deploy_redis
deploy_mongodb
create_secrets
build_image
deploy_spillway
print_urls
