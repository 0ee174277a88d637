"""The ground floor: generic helpers every layer may use (sizes, strict and atomic JSON). Imports nothing of
Crash Guard."""
