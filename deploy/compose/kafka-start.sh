#!/usr/bin/env bash
# The compose broker with service identity: SASL/SCRAM-SHA-512 on its one client listener, the StandardAuthorizer
# and no access without an ACL (docker-compose.yml's kafka-acls job makes them from shared/topics.py). The SCRAM
# accounts come from CW_SCRAM_USER_<name>=<password> (deploy/compose/secrets.sh) when the storage is formatted.
set -euo pipefail
config=/tmp/server.properties
admin_password="${CW_SCRAM_USER_admin:?run deploy/compose/secrets.sh first}"
cat >"$config" <<PROPERTIES
node.id=1
process.roles=broker,controller
controller.quorum.voters=1@localhost:9093
controller.listener.names=CONTROLLER
listeners=SASL_PLAINTEXT://:9092,CONTROLLER://localhost:9093
advertised.listeners=SASL_PLAINTEXT://kafka:9092
inter.broker.listener.name=SASL_PLAINTEXT
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${admin_password}";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin;User:ANONYMOUS
allow.everyone.if.no.acl.found=false
log.dirs=/var/lib/kafka/data
num.partitions=6
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
cat >/tmp/admin.properties <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${admin_password}";
PROPERTIES
accounts=()
while IFS='=' read -r name value; do
  [[ "$name" == CW_SCRAM_USER_* ]] && accounts+=(--add-scram "SCRAM-SHA-512=[name=${name#CW_SCRAM_USER_},password=${value}]")
done < <(env)
/opt/kafka/bin/kafka-storage.sh format --config "$config" --cluster-id "${CLUSTER_ID:-$(/opt/kafka/bin/kafka-storage.sh random-uuid)}" \
  --ignore-formatted "${accounts[@]}"
exec /opt/kafka/bin/kafka-server-start.sh "$config"
