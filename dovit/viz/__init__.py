"""Pictures of a forward: masks, token-pass overlays, heat maps, legends, annotated video frames, the token
pass animated."""
