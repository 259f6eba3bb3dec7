"""harmbench.metrics"""
