"""harmbench.models"""
