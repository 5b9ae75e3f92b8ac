"""Where images come from: the CIFAR python batches, and generated stand-ins."""
