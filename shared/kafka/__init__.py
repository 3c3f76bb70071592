"""Kafka for every service: the producer (:mod:`.producer`), the consumer loop (:mod:`.consumer`), how a failed
record goes round its group's retry topic to its dead letter (:mod:`.retry_topics`), and the headers our records
carry (:mod:`.records`)."""
