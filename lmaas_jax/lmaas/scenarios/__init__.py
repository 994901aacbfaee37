"""Scenarios: what the seller offers and what each customer faces (the data of the LMaaS game):
`Market` (models, customers, scenario sets), `ValueMarket` (a value table), the generator."""
