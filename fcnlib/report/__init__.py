"""What the pipeline publishes: tables, figures, DVC summaries, the fidelity document."""
