"""Competition between sellers: several providers each price their own models while the customers
choose across all of them. Built on the pricing layer (a seller's best response is gradient IMP on
the market as that seller sees it); public through the top-level namespace (`lmaas_jax.compete`)."""
