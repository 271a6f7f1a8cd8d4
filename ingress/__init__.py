"""FastAPI ingress: answers the vendor only once the event is durably in Kafka."""
