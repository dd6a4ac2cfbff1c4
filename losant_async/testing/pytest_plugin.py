"""pytest plugin of losant_async: fixtures for the local Losant emulator (placeholder until the emulator lands)."""
