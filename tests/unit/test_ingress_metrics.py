from prometheus_client import generate_latest

from ingress.metrics import IngressMetrics


def test_events_by_type_are_exported_at_zero_before_the_first_event():
    text = generate_latest(IngressMetrics.create().registry).decode()
    assert 'ingress_events_total{event="visit.completed"} 0.0' in text
    assert 'ingress_events_total{event="treatment.updated"} 0.0' in text
