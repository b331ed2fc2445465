"""Router image build: board descriptions in, flashable GPT disk images out.

The build is a pipeline of named steps (see `image.pipeline.STEPS`): bootstrap -> install -> overlay ->
trim -> initramfs -> squash -> assemble -> check-size. Each step reads the previous step's output from
the board's work directory and can be run alone. Nothing here needs loop devices or mounts.
"""
