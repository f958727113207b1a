"""Engineer stage: transform spec fitted on the train split."""
