"""Unit tests of the harnesses (bench, chaos, devstack): not the product, run by make test."""
