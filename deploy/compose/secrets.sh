#!/usr/bin/env bash
# Local secrets of docker-compose.yml, generated once into .local/compose/ (never committed) and kept after that, so
# the broker's SCRAM accounts (made when its storage is formatted) keep matching. One env file per service holds
# only that service's Kafka password; kafka.env holds every account, for the broker; acls.env the super user's.
# Usage: deploy/compose/secrets.sh [output directory, default .local/compose]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.local/compose}"
services=(ingest subscription matching delivery ops)
mkdir -p "$out"
chmod 700 "$out"

password() { head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '='; }

if [[ ! -f "$out/kafka.env" ]]; then
  umask 077
  admin="$(password)"
  {
    echo "CW_SCRAM_USER_admin=$admin"
    for service in "${services[@]}"; do
      secret="$(password)"
      echo "CW_SCRAM_USER_$service=$secret"
      echo "${service^^}_KAFKA__SASL_PASSWORD=$secret" >"$out/$service.env"
    done
  } >"$out/kafka.env"
  echo "CW_KAFKA_ADMIN_PASSWORD=$admin" >"$out/acls.env"
  echo "wrote $out/ (kafka.env, acls.env, one env file per service)"
else
  echo "$out/ exists; kept (delete it and the kafka volume to start afresh)"
fi
