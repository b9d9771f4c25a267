"""raysweep's analysis: reads a sweep's Parquet tables and artifacts; imports
neither Ray nor the experiments."""
