"""Read-only over MLflow (or a journal): lineage pages and drawings, pedigrees, utilisation, comparison
reports and their statistics, a search run's record."""
