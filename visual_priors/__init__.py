"""visual_priors: data-mixture ablations of LM pre-training, measured through visual priors."""
