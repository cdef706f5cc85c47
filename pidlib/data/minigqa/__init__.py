"""Mini-GQA: procedural GQA-style scenes, programs, questions and an independent verifier."""
