"""A run's life, shared by every operator, the sensor and the trigger: submit or adopt, remember, wait,
end, hand on. Nothing here imports the operators, sensors or triggers above it."""
