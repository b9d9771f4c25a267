"""What runs in Ray's workers: every Tune trial runs a bundle of our trials.

bundles     what each Tune trial runs (the driver groups trials into bundles with it
            and reads them back): a bundle's members one by one, or fused
attempt     one attempt of a trial: its `Trial` context, the experiment call, the outcome
messages    what a worker tells the driver (`Report`), and how it travels in Tune results
devices     the device a trial runs on, and the GPU memory it used
provenance  package versions and the code's git state
"""
