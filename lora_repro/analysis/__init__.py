"""The paper's analyses of learned adapters (Sec. 7): subspace similarity (Figs. 3, 4) and amplification (Table 7)."""
