"""What every method and the pipeline use: errors, settings rules, the method contract, the
frameworks, images and data, and the perturbation engine. Imports nothing else of heatkit."""
