"""Yangtze River Delta scenario platforms (Shanghai, Zhejiang, Jiangsu): catalog, records, mutual recognition."""
